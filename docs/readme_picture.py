"""Rebuild a README picture (the input and 9 projections in two rows, with a caption) from a projection sheet.

    deepvis visualize --model resnet50 --weights random --layer layer3.2 --out r50
    python docs/readme_picture.py r50/layer3.2_projections.png docs/visualize_random_resnet50.png \
        "deepvis visualize --model resnet50 --weights random --layer layer3.2   (RANDOM weights)"

    deepvis convert --torchvision googlenet --weights random --out googlenet.msgpack
    deepvis visualize --weights googlenet.msgpack --layer inception4a --out g
    python docs/readme_picture.py g/inception4a_projections.png docs/visualize_random_googlenet.png \
        "deepvis visualize --weights googlenet.msgpack --layer inception4a   (GoogLeNet imported by torch.export, RANDOM weights)"
"""

import os
import sys

from PIL import Image, ImageDraw, ImageFont

src, dst = sys.argv[1], sys.argv[2]
caption = sys.argv[3]
sheet = Image.open(src).convert("RGB")
cell = sheet.width / 10  # the input and 9 projections, side by side
cells = [sheet.crop((round(i * cell), 0, round((i + 1) * cell), sheet.height)) for i in range(10)]
cw, ch, band = cells[0].width, sheet.height, 26
out = Image.new("RGB", (5 * cw, 2 * ch + band), "white")
for i, c in enumerate(cells):
    out.paste(c, ((i % 5) * cw, band + (i // 5) * ch))
ImageDraw.Draw(out).text(
    (4, 4), caption, fill="black", font=ImageFont.load_default(size=15),
)
out.quantize(colors=160, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dst, optimize=True)
print(out.size, os.path.getsize(dst), "bytes")
