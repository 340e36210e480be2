"""A small catalogue in the Kaggle layout with the cases the gallery must handle: a name with an unquoted comma, a
row without a photo, an id that is not a number, a duplicated id."""

from pathlib import Path

from PIL import Image

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
ROWS = [
    "1,Men,Apparel,Topwear,Shirts,Blue,Summer,2012,Casual,Blue Oxford Shirt",
    "2,Women,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,Red Graphic Tshirt",
    "3,Men,Footwear,Shoes,Casual Shoes,Black,Winter,2013,Casual,Black Leather Shoes",
    "4,Women,Accessories,Watches,Watches,Silver,Fall,2014,Formal,Silver Watch, Steel Strap",  # unquoted comma, as Kaggle's
    "5,Men,Apparel,Topwear,Shirts,White,Summer,2012,Formal,White Formal Shirt",
    "6,Men,Apparel,Topwear,Shirts,Green,Summer,2012,Casual,Green Shirt Without Photo",
    "x7,Men,Apparel,Topwear,Shirts,Grey,Summer,2012,Casual,Id Is Not A Number",
    "5,Men,Apparel,Topwear,Shirts,Pink,Summer,2012,Casual,Duplicate Of Five",
]
WITH_PHOTOS = (1, 2, 3, 4, 5)


def write_catalogue(root: Path, rows: list[str], photos: tuple[int, ...]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "styles.csv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    for item_id in photos:
        Image.new("RGB", (6, 8), (item_id * 40, 90, 120)).save(root / "images" / f"{item_id}.jpg")
    return root
